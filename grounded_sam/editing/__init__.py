"""Fixing an automatic result by hand: the label session (undo/redo over clicks), which model refines the
clicks (refiners: SAM2, or SAM 3's tracker after SAM 3), the editor a page drives, its overlay view, and its
downloads.
"""
