"""Faults the chaos runner injects: process signals, network cuts, disk damage."""
