"""Prompt templates shipped with the reference backend (a package so that they are installed with it)."""
