"""Injected faults (`engine simulate --faults`): the spec, and carrying it out."""
