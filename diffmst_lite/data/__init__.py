"""Songs (MUSDB18, song folders, reference mixes), synthetic songs and the Method 1/2 datasets (docs/design.md §6)."""

from diffmst_lite.data.songs import Song, load_songs, reference_songs
from diffmst_lite.data.song_trees import make_songs

__all__ = ["Song", "load_songs", "make_songs", "reference_songs"]
