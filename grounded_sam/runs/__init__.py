"""Labeling many images: the loop that writes each image as it is done, and the manifest that makes a
folder run resumable. A run engine (local today) plugs in here.
"""
