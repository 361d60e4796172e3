"""What a run leaves on disk: the run directory (config record, atomic checkpoints,
loading G back), its one-writer lock, and the .keras files the package ships.

Floor 2: may import the ground and modeling/; a peer of data/ (neither imports the other).
"""
