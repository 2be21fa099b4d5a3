"""Where ptfast reads and writes by default: lfd's files, and ptfast's own.

Kept apart from the modules that use them so that building the command line (which shows
these in --help) imports nothing heavy.
"""

DEFAULT_CONFIG_PATH = "/etc/csf/csf.conf"
# ptfast's own settings, same syntax, read after csf.conf and winning over it.
DEFAULT_OVERRIDE_PATH = "/etc/ptfast/ptfast.conf"
DEFAULT_PIGNORE_PATH = "/etc/csf/csf.pignore"
DEFAULT_TEMPLATE_DIR = "/usr/local/csf/tpl"
DEFAULT_STATE_DIR = "/var/lib/ptfast"
DEFAULT_LOG_FILE = "/var/log/ptfast.log"
DEFAULT_EVENTS_FILE = "/var/log/ptfast.jsonl"
