"""What comes in: image files, uploads and archives, read safely into (H, W, 3) uint8 RGB arrays."""
