"""The shared vocabulary every other package stands on: escaping, paths, safe file
access, users, bounds and reading csf.conf. Imports nothing else of ptfast."""
