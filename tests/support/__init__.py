"""What every suite shares: free ports and probes, waiting for a condition, and the CI rule.

    from tests.support.ports import free_port, port_open
    from tests.support.waiting import eventually, eventually_async
    from tests.support.ci import needed
    from tests.support.servers import wait_started

Servers themselves (start, stop, kill) live in tests/servers, one module each.
"""
