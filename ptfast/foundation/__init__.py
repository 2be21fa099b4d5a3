"""The shared vocabulary the floors above stand on: what goes wrong (problems),
reading csf.conf (config) and the webhook settings (destinations), safe file
access, users, escaping, bounds, paths. Imports only the scanner's contract
(scan._corespec), below it."""
