"""A realistic shared-hosting server for measuring ptfast (issue 11): real daemons from the
distribution, 20 accounts, sessions, web load, planted attacks and customer apps.

    sudo python3 -m tests.hosting            # from the checkout: install, build, scan, tear down

``packages`` installs the daemons, ``bed`` runs them, ``attacks`` plants attacks and customer
apps, ``measure`` scans and classifies; ``test_hosting`` asserts the issue's "Done when".
"""
