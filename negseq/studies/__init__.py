"""Studies: the experiment runner (:mod:`.runner`), paired comparisons with crossed-bootstrap intervals (:mod:`.paired`,
:mod:`.compare`), the HR_p/HR_n frontier (:mod:`.frontier`) and the planted synthetic log (:mod:`.synthetic`)."""
