"""The opt-in `publish:` assets: each new dataset or model version pushed to the Hugging Face Hub.

They exist only when the spec names a repo; eager automation runs them after the version they push,
so a scheduled refresh publishes by itself. Pushing a version the repo already holds makes no commit."""

import dagster as dg

from geosolver_data.spec import HubTarget, PublishSpec
from geosolver_data.store.artifact import Artifact
from geosolver_data.store.hub_push import RepoType, push_version
from pipelines.assets import DatasetAssets, automation
from pipelines.resources import GeosolverResource
from pipelines.scope import DATASET, MODEL, Scope


def _pushed(context: dg.AssetExecutionContext, artifact: Artifact, target: HubTarget, repo_type: RepoType,
            name: str) -> dg.MaterializeResult:
    pushed = push_version(artifact, target.repo, repo_type, name, target.private, log=context.log.info)
    context.log.info(f"{'new commit' if pushed.new_commit else 'already on the Hub, no commit'}: {pushed.url} "
                     f"at {pushed.commit}")
    return dg.MaterializeResult(data_version=dg.DataVersion(artifact.version), metadata={
        "version": artifact.version, "repo": dg.MetadataValue.url(pushed.url), "commit": pushed.commit,
        "new_commit": pushed.new_commit})


def _hub_dataset(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """The latest dataset version on the Hub (`publish.dataset`): shards, card, reports and manifest, one commit."""
    spec = geosolver.spec()
    layout = geosolver.layout(spec)
    shelf = layout.shelf
    assert spec.publish.dataset is not None
    return _pushed(context, shelf.require_intact(shelf.latest().version), spec.publish.dataset, "dataset", spec.name)


def _hub_model(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """The latest model version on the Hub (`publish.model`): weights, card and manifest, one commit."""
    spec, shelf = geosolver.spec(), geosolver.store().models
    assert spec.publish.model is not None
    return _pushed(context, shelf.require_intact(shelf.latest().version), spec.publish.model, "model", "")


def hub_assets(scope: Scope, built: DatasetAssets, publish: PublishSpec) -> list[dg.AssetsDefinition]:
    """`hub_dataset` after `dataset_shards` and `hub_model` after `finetuned_model`, for the repos the spec names."""
    wanted = [("hub_dataset", _hub_dataset, built.dataset_shards, DATASET, publish.dataset),
              ("hub_model", _hub_model, built.finetuned_model, MODEL, publish.model)]
    return [dg.asset(key=scope.key(name), deps=[upstream], group_name=scope.group(group),
                     automation_condition=automation, kinds={"huggingface"},
                     required_resource_keys={scope.resource_key}, description=body.__doc__)(scope.bind(body))
            for name, body, upstream, group, target in wanted if target is not None]
