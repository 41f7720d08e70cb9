"""CustomSMSRoutingToHandler: the default handler, and a tutorial in one file.

A handler script is a Python file in ``plugins/handlers/``. smshost loads it when it
starts and again every time the file is saved (within a second, no restart); if a
save breaks it, the previous version keeps serving and the error shows in the log,
``/health`` and ``smshost check``.

A route sends messages here by naming this file (without ``.py``) in
``config/routes.toml``::

    [[inbound]]
    name = "everything"
    destination = "handler"
    target = "CustomSMSRoutingToHandler"
    default = true

Try it without sending anything: ``smshost handler test CustomSMSRoutingToHandler
--ani +14155550123 --body "hours"``. The full context API is in docs/handlers.md.
"""

from host.api import HandlerContext

# Keywords (first word of the message, any case) and the workgroup queue they go to.
QUEUES = {
    "SALES": "sales",
    "SUPPORT": "support",
    "BILLING": "support",
}

HOURS = "We are open Monday to Friday, 9:00 to 17:00."


def handle(ctx: HandlerContext) -> None:
    """Called for every message routed here; ``ctx`` is the context.

    ``handle`` may also be ``async def``. A plain function runs in a thread, so it may
    block (an HTTP call to your CRM, say) without holding up other messages; either
    kind is stopped after ``handlers.timeout`` seconds, and then, or when it raises,
    the message goes to the default route instead: nothing is lost.
    """
    # ctx.state is remembered per conversation (this number texting that number),
    # saved in the database after each call.
    seen = ctx.state.get("messages", 0) + 1
    ctx.state["messages"] = seen

    words = ctx.body.strip().split()
    keyword = words[0].upper().strip(".,!?;:") if words else ""

    if keyword == "HOURS":
        # ctx.reply sends an SMS back to the sender, from the number they texted.
        ctx.reply(HOURS)
        return

    if keyword in QUEUES:
        # ctx.route_to hands the message on: here to a workgroup queue, where an
        # agent picks it up. Other destinations: "chat", "email", "webhook",
        # "handler" (another script).
        ctx.route_to("queue", QUEUES[keyword])
        if seen == 1:
            ctx.reply(f"Thanks! Someone from {QUEUES[keyword]} will text you shortly.")
        return

    # Custom attributes of the broker, the account and the message are in ctx.attrs;
    # ctx.log is a logger.
    ctx.log.info("no keyword from %s (message %d of the conversation)", ctx.ani, seen)
    ctx.reply("Text SALES, SUPPORT or BILLING to reach us, or HOURS for opening hours.")
