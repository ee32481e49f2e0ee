"""Contracts and plumbing shared by the Mängelmelder services. Imports no service."""
