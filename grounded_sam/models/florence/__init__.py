"""Florence-2: category prompts -> boxes (``sv.Detections`` with ``class_id``), and parsing its output text."""
