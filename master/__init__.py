"""Mensa."""
