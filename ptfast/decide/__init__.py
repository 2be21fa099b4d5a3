"""Judging one pass: the policy and its checks turn a snapshot into findings; ignore
rules and the memory of what was reported."""
