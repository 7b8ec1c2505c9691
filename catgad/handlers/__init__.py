"""User code behind commands: webhooks in any language and Python plugins, one protocol.

    protocol.py   HandlerRequest → Handler → HandlerReply, and the reply's checks
    signing.py    Standard Webhooks secrets and signatures
    circuit.py    the circuit breaker a webhook sits behind
    webhook.py    a handler at an HTTP URL (signed, retried, broken circuit answers at once)
    transport.py  the webhooks' HTTP/1.1 client: httpcore pools over asyncio streams
    plugin.py     a handler found through the entry-point group `catgad.handlers`
    registry.py   every handler of a config, built once, closed on shutdown

The engine sees only the Handler protocol; which kind answered is the
registry's business.
"""
