"""Fixing an automatic result by hand: the label session (undo/redo over SAM2 clicks), the editor a page
drives, its overlay view, and its downloads.
"""
