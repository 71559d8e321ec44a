"""keisei-plugin-keisei2026: Keisei's 2026 networks, key for key with its checkpoints."""
