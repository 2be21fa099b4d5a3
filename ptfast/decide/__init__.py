"""Judging one pass: a judgement runs the checks, with the policy (the judging context), on a
snapshot and turns it into findings; ignore rules and the memory of what was reported."""
