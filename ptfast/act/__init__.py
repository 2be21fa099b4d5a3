"""Acting on a judgement: the tracking loop runs a pass, respond alerts (with what a
load alert attaches: hostload), kills and runs the admin's actions."""
