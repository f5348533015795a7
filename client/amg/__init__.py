"""SamAutomaticMaskGenerator over Triton, in numpy: point grids and crops, stability scores, NMS, RLE and small-region removal."""
