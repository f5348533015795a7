"""SamPredictor's numpy half: ResizeLongestSide and postprocess_masks, prompt encoding, input validation, request arrays in and results out."""
