"""The built-in strategies: the plain classifier (with its fine-tune option), the automatic search,
the budget search, and distillation as a refiner of any of them."""

from __future__ import annotations

from dataclasses import replace

from .registry import FitContext, register_refiner, register_strategy


class HeadStrategy:
    """The task's backbone (or the one asked for) and a trained head; --fine-tune trains its last blocks too."""

    name = "head"

    def fit(self, splits, config, ctx: FitContext):
        options = config.options
        job_s = 0.0
        if options.engine.kind == "ray":  # every split's embeddings in one Ray job before create()
            from ..features.ray_job import embed_run

            job_s = embed_run(ctx.classifier, splits, options, ctx.cache, ctx.progress)
        refit = replace(options, hparams=replace(options.hparams, refit_on_val=True))  # all labelled data for the final head
        clf = ctx.classifier.create(splits.train, splits.val, refit, ctx.progress, ctx.cache)
        if job_s:
            clf.timings["extract_s"] = clf.timings.get("extract_s", 0.0) + job_s
        return clf


class AutoStrategy:
    """Backbone, input size and head settings chosen on validation within a time budget (tasks/auto.py)."""

    name = "auto"

    def fit(self, splits, config, ctx: FitContext):
        from ..tasks.auto import search
        from ..tasks.options import AutoOptions

        budget = config.search.budget
        clf, record = search(ctx.classifier, splits.train, splits.val, config.options,
                             config.search.auto or AutoOptions(), ctx.progress, ctx.cache, ctx.n_test,
                             budget.max_flash, budget.max_ram, ctx.started, ctx.formats)
        ctx.options = replace(clf.options, hparams=config.options.hparams)
        ctx.records["auto"] = record
        return clf


class BudgetStrategy:
    """The most accurate model that fits --max-flash/--max-ram (tasks/budget_search.py) whose int8
    file passes (tasks/budget_fallback.py), confirmed on the real int8 file after export."""

    name = "budget"

    def fit(self, splits, config, ctx: FitContext):
        from ..tasks.budget_fallback import shippable
        from ..tasks.budget_search import search

        budget = config.search.budget
        refit = not config.search.distill
        clf, record = search(ctx.classifier, splits.train, splits.val, config.options, ctx.progress, ctx.cache,
                             budget.max_flash, budget.max_ram, refit_on_val=refit)
        clf = shippable(ctx.classifier, clf, record, splits.train, splits.val, config.options, ctx.progress,
                        ctx.cache, refit)  # an int8 file refused or over budget: the next candidate
        ctx.options = replace(clf.options, hparams=config.options.hparams)
        if not {"tflite-int8", "c-array"} & set(ctx.formats):  # the budget is confirmed on the real int8 file
            ctx.formats = (*ctx.formats, "tflite-int8")
        ctx.records["budget_search"] = record
        ctx.after_export.append(lambda exports, out_dir: _confirm(record, exports, out_dir))
        return clf


def _confirm(record, exports: list[dict], out_dir) -> None:
    from ..atomic import write_text
    from ..evaluate.budget_report import frontier_svg
    from ..tasks.budget_search import confirm

    confirm(record, exports)
    write_text(out_dir / "frontier.svg", frontier_svg(record.to_dict()))


class DistillRefiner:
    """The strategy's model becomes a student of the full model's probabilities; kept only when it
    is better on validation (tasks/distill.py)."""

    name = "distill"

    def refine(self, clf, splits, config, ctx: FitContext):
        from ..tasks.distill import distill

        clf, record = distill(ctx.classifier, clf, splits, ctx.options, ctx.progress, ctx.cache)
        ctx.records["distill"] = record
        return clf


register_strategy(HeadStrategy())
register_strategy(AutoStrategy())
register_strategy(BudgetStrategy())
register_refiner(DistillRefiner())
