"""rename-io: rename graph inputs and outputs."""

from __future__ import annotations

from ..core.model import Model
from .base import Pass, PassError, PassResult


class RenameIO(Pass):
    """Rename graph inputs and outputs: ``rename-io(input.1=image,495=logits)``. Every reader,
    subgraph reference and value_info follows. Renaming a name that is already the new one
    changes nothing."""

    name = "rename-io"
    free_options = True
    free_help = "OLD=NEW for each graph input or output to rename"

    def input_after(self, name, result):
        """The new name of a renamed input."""
        return str(self.opts.get(name, name))

    def feeds_before(self, feeds, before, after, result):
        """The same arrays under the old names."""
        new_to_old = {str(new): old for old, new in self.opts.items()}
        return [{new_to_old.get(k, k): v for k, v in feeds.items()}]

    def reference(self, before: bytes, after: Model, feeds: dict, result: PassResult, run) -> dict:
        """The model before, fed and read under the old names."""
        outs = run(before, self.feeds_before(feeds, None, after, result)[0])
        old_to_new = {old: str(new) for old, new in self.opts.items()}
        return {old_to_new.get(k, k): v for k, v in outs.items()}

    def apply(self, model: Model, result: PassResult) -> None:
        g = model.graph
        if not self.opts:
            raise PassError("rename-io needs OLD=NEW pairs, e.g. rename-io(input.1=image)")
        io = set(g.input_names) | set(g.output_names)
        for old, new in self.opts.items():
            if old not in io:
                if new in io and not g.is_taken(old):
                    continue  # done already
                from ..errors import not_found
                raise not_found("graph input or output", old, io, "the model")
            g.rename(old, str(new))
            result.note(f"{old!r} -> {new!r}")
