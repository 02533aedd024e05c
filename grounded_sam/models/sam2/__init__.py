"""SAM2: boxes -> masks for a whole image in one encoding, and clicks -> masks on cached embeddings."""
