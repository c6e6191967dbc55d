"""Step and Trace live on the ops floor (fastq.layers._trace), beside the ops that build them;
this driver module keeps the names explain's other modules read."""
from ..layers._trace import STAGES, Step, Trace, _f32_step, _fr, _g, _jsonable, _out_text, _same_output  # noqa: F401
