"""A realistic shared-hosting server for measuring ptfast (issues 11 and 21): real daemons from
the distribution, 20 accounts, sessions, web load whose PHP holds TCP database connections,
an "internet" of its own (a network namespace on 198.18.0.0/15), planted attacks and
customer apps.

    sudo python3 -m tests.hosting            # from the checkout: install, build, scan, tear down
    sudo python3 -m tests.hosting --service  # ptfast run, attacks planted while it runs

``packages`` installs the daemons, ``bed`` runs them, ``attacks`` plants attacks and customer
apps, ``measure`` scans and classifies, ``live`` measures ``ptfast run``; ``goals`` holds issue
21's goals and the known misses (xfail); ``test_hosting`` asserts the bed produces what it
claims and the scan's goals, ``test_service`` the service's. CI runs them (.ci/run).
"""
