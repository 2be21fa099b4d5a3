"""What leaves the host: alert text, mail, webhooks, the spool that retries them, the
log and event files, and what each pass publishes (status file, metrics)."""
