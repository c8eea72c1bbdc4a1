"""Network modules: backbone, feature pyramid, heads, anchors and the detector."""
