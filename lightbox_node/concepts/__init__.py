"""Concepts across the network: finished fine-tunes offered to the registry, merges on the
registry leader, and GPU hosts resolving a concept to its current global model.

* `submit` — `AdapterSubmitter`: a queue node's finished `finetune` jobs -> `submit_adapter`.
* `resolver` — `ConceptResolver`: concept name -> current model id -> blob bytes, cached.
* `merger` — `Merger`: on the registry leader, pending adapters -> exact merge -> new model.
"""

from lightbox_node.concepts.resolver import ConceptResolver
from lightbox_node.concepts.submit import AdapterSubmitter, adapter_command

__all__ = ["AdapterSubmitter", "ConceptResolver", "adapter_command"]
