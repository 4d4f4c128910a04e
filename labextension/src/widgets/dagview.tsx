import React from 'react';

import type { Execution } from '../api/types';
import { layoutDag, NODE_H, NODE_W } from '../model/dag';

/** The execution's steps as a DAG, each node coloured by its state. */
export function DagView(props: {
  execution: Execution;
  selected: string | null;
  onSelect: (step: string) => void;
}): React.JSX.Element {
  const { execution, selected, onSelect } = props;
  const after = new Map(
    execution.workflow.steps.map(s => [s.name, s.after ?? []])
  );
  const steps = execution.steps.map(s => ({
    name: s.name,
    after: after.get(s.name) ?? []
  }));
  const layout = layoutDag(steps);
  const state = new Map(
    execution.steps.map(s => [s.name, s.state ?? 'pending'])
  );
  const pos = new Map(layout.nodes.map(n => [n.name, n]));
  return (
    <svg
      className="jp-StaxDag"
      width={layout.width}
      height={layout.height}
      viewBox={`0 0 ${layout.width} ${layout.height}`}
      role="img"
      aria-label="steps and their dependencies"
    >
      <defs>
        <marker
          id="jp-StaxDag-arrow"
          viewBox="0 0 10 10"
          refX="10"
          refY="5"
          markerWidth="6"
          markerHeight="6"
          orient="auto-start-reverse"
        >
          <path d="M 0 0 L 10 5 L 0 10 z" className="jp-StaxDag-arrowhead" />
        </marker>
      </defs>
      {layout.edges.map(e => {
        const a = pos.get(e.from);
        const b = pos.get(e.to);
        if (!a || !b) {
          return null;
        }
        const x1 = a.x + NODE_W;
        const y1 = a.y + NODE_H / 2;
        const x2 = b.x;
        const y2 = b.y + NODE_H / 2;
        const mx = (x1 + x2) / 2;
        return (
          <path
            key={`${e.from}->${e.to}`}
            className="jp-StaxDag-edge"
            d={`M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`}
            markerEnd="url(#jp-StaxDag-arrow)"
          />
        );
      })}
      {layout.nodes.map(n => {
        const s = state.get(n.name) ?? 'pending';
        return (
          <g
            key={n.name}
            className={`jp-StaxDag-node jp-StaxState-${s}${selected === n.name ? ' jp-mod-selected' : ''}`}
            data-step={n.name}
            data-state={s}
            transform={`translate(${n.x}, ${n.y})`}
            onClick={() => onSelect(n.name)}
          >
            <title>{`${n.name}: ${s}`}</title>
            <rect width={NODE_W} height={NODE_H} rx={5} />
            <text
              x={NODE_W / 2}
              y={NODE_H / 2}
              dominantBaseline="central"
              textAnchor="middle"
            >
              {n.name.length > 16 ? `${n.name.slice(0, 15)}…` : n.name}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
