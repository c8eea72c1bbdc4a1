"""Box operations: helpers (:mod:`.boxes`), the box coder (:mod:`.box_coder`), NMS (:mod:`.nms`) and score sigmoids (:mod:`.sigmoid`)."""
