"""Box operations: helpers (:mod:`.boxes`), the box coder (:mod:`.box_coder`) and NMS (:mod:`.nms`)."""
