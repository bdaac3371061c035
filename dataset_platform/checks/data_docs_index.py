"""The Data Docs site's index builder (``checks/data_docs.py`` configures it): GX's, listing the
validation results stored (the newest: ``data_docs.prune_results``) instead of every page of the
site. GX's own lists each page ever rendered on every build, and removes the pages whose result is
no longer stored; here the pages of pruned results stay, linked from the checks that made them.

A module of its own: it imports GX, which the run's process does not (``checks/gx_worker.py``).
"""

from __future__ import annotations

from great_expectations.render.renderer.site_builder import DefaultSiteIndexBuilder


class RecentValidationsIndexBuilder(DefaultSiteIndexBuilder):
    def _build_validation_and_profiling_result_site_keys(self, skip_and_clean_missing: bool) -> list:
        store = self.data_context.stores[self.site_section_builders_config["validations"]["source_store_name"]]
        return list(store.list_keys())
