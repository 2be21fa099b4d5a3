"""Reading the host: /proc and the sockets, through the compiled core (_procscan) or its
pure-Python twin (_procscan_py), both held to the contract in _corespec."""
