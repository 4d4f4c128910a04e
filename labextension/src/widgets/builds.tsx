/**
 * "Build for cluster..." on a StaX family of the sidebar's Images section: a small dialog to
 * pick the cluster, then the build's status and log, live, under the family (see
 * `model/builds.ts`). Shown only for a family whose catalog names its build recipe.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { UseSignal } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import React, { useEffect, useRef, useState } from 'react';

import { Builds, buildLine, isOver, type FamilyBuild } from '../model/builds';
import type { ImageFamily } from '../model/images';
import type { StaxModel } from '../model/model';

/** The builds of a sidebar's model (one set per model; they outlive re-renders). */
const buildsOfModel = new WeakMap<StaxModel, Builds>();

export function buildsOf(model: StaxModel): Builds {
  let b = buildsOfModel.get(model);
  if (!b) {
    b = new Builds(model.client, {
      // the new variant is in the catalog now: list it
      onFinal: () => model.refreshImages()
    });
    buildsOfModel.set(model, b);
  }
  return b;
}

/** The dialog's body: which cluster to build for. */
class ClusterPicker extends Widget {
  private readonly select: HTMLSelectElement;

  constructor(
    family: string,
    recipe: string,
    clusters: string[],
    chosen: string | null
  ) {
    super();
    this.addClass('jp-StaxBuildDialog');
    const text = document.createElement('p');
    text.textContent =
      `Build the variant of ${family} that fits the cluster's traits, ` +
      `from ${recipe}, and add it to the catalog.`;
    const label = document.createElement('label');
    label.textContent = 'cluster ';
    this.select = document.createElement('select');
    this.select.className = 'jp-StaxSelect jp-StaxBuildDialog-cluster';
    for (const name of clusters) {
      const o = document.createElement('option');
      o.value = name;
      o.textContent = name;
      o.selected = name === chosen;
      this.select.appendChild(o);
    }
    label.appendChild(this.select);
    this.node.append(text, label);
  }

  getValue(): string {
    return this.select.value;
  }
}

/** Ask which cluster to build for; null when cancelled. */
export async function pickCluster(
  family: string,
  recipe: string,
  clusters: string[],
  chosen: string | null
): Promise<string | null> {
  const result = await showDialog({
    title: `Build ${family} for a cluster`,
    body: new ClusterPicker(family, recipe, clusters, chosen),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Build' })]
  });
  return result.button.accept && result.value ? result.value : null;
}

function BuildStatusView(props: { build: FamilyBuild }): React.JSX.Element {
  const b = props.build;
  const over = isOver(b);
  const [showLog, setShowLog] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    if (pre.current) {
      pre.current.scrollTop = pre.current.scrollHeight; // follow the log's end
    }
  }, [b.log, showLog]);
  const state = b.status ?? (b.error ? 'REFUSED' : 'STARTING');
  return (
    <div
      className="jp-StaxBuild"
      data-build-status={state}
      data-build-id={b.id ?? undefined}
      data-cluster={b.cluster}
    >
      <div className="jp-StaxRow">
        <span className={`jp-StaxBuild-status jp-StaxBuild-${state}`}>
          {state}
        </span>
        <span className="jp-StaxBuild-message jp-StaxMuted">
          {buildLine(b)}
        </span>
      </div>
      {b.error && b.id !== null && (
        <div className="jp-StaxError-text">{b.error}</div>
      )}
      {b.id !== null && (
        <button
          className="jp-StaxButton jp-StaxBuild-toggle"
          onClick={() => setShowLog(!showLog)}
        >
          {showLog ? 'Hide log' : 'Show log'}
        </button>
      )}
      {b.id !== null && showLog && (
        <pre
          ref={pre}
          className={`jp-StaxBuild-log${over ? '' : ' jp-mod-live'}`}
        >
          {b.log || '(no output yet)'}
        </pre>
      )}
    </div>
  );
}

/** The family's "Build for cluster..." button and its latest build. */
export function FamilyBuildView(props: {
  model: StaxModel;
  family: ImageFamily;
}): React.JSX.Element | null {
  const { model, family } = props;
  const recipe = family.recipe;
  if (recipe === null) {
    return null;
  }
  const builds = buildsOf(model);
  const start = async () => {
    const cluster = await pickCluster(
      family.family,
      recipe,
      model.clusters.map(c => c.info.name),
      model.imagesCluster
    );
    if (cluster) {
      await builds.start(family.family, recipe, cluster, family.catalog);
    }
  };
  return (
    <UseSignal signal={builds.changed}>
      {() => {
        const b = builds.of(family.family);
        return (
          <div className="jp-StaxFamily-build">
            <button
              className="jp-StaxButton jp-StaxBuildFor"
              title={`Build a variant of ${family.family} for a cluster from ${recipe}`}
              disabled={b !== null && !isOver(b)}
              onClick={() => void start()}
            >
              Build for cluster...
            </button>
            {b && <BuildStatusView build={b} />}
          </div>
        );
      }}
    </UseSignal>
  );
}
