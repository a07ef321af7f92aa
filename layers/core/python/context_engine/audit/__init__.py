"""Audit trail: the hash chain lives in ``chain``; storage and handlers wire it in.

Kept free of imports so that importing one audit module does not load the others.
"""
