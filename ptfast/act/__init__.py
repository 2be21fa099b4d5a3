"""Acting on a judgement: the tracking loop runs a pass, respond alerts, kills and runs
the admin's actions."""
