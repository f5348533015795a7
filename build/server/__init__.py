"""Starting and stopping a real tritonserver (the embedded one, or NVIDIA's), and the key that guards its restricted APIs."""
