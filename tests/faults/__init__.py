"""Fault injection: every fault of issue 11 planted, with the outcome the project promises."""
