/**
 * A layered layout of an execution's steps for the DAG view: a step's column is the length of
 * the longest dependency path that leads to it; rows keep the workflow's order.
 */
export interface DagInput {
  name: string;
  after: readonly string[];
}

export interface DagNode {
  name: string;
  column: number;
  row: number;
  x: number;
  y: number;
}

export interface DagEdge {
  from: string;
  to: string;
}

export interface DagLayout {
  nodes: DagNode[];
  edges: DagEdge[];
  width: number;
  height: number;
}

export const NODE_W = 128;
export const NODE_H = 30;
const GAP_X = 40;
const GAP_Y = 14;
const PAD = 8;

export function layoutDag(steps: readonly DagInput[]): DagLayout {
  const names = new Set(steps.map(s => s.name));
  const deps = new Map(
    steps.map(s => [s.name, s.after.filter(a => names.has(a))])
  );
  const column = new Map<string, number>();
  const visiting = new Set<string>();
  const col = (name: string): number => {
    const known = column.get(name);
    if (known !== undefined) {
      return known;
    }
    if (visiting.has(name)) {
      return 0; // a cycle cannot be submitted; never loop on one
    }
    visiting.add(name);
    const before = deps.get(name) ?? [];
    const c = before.length ? Math.max(...before.map(col)) + 1 : 0;
    visiting.delete(name);
    column.set(name, c);
    return c;
  };
  const rows = new Map<number, number>();
  const nodes: DagNode[] = steps.map(s => {
    const c = col(s.name);
    const r = rows.get(c) ?? 0;
    rows.set(c, r + 1);
    return {
      name: s.name,
      column: c,
      row: r,
      x: PAD + c * (NODE_W + GAP_X),
      y: PAD + r * (NODE_H + GAP_Y)
    };
  });
  const edges: DagEdge[] = [];
  for (const s of steps) {
    for (const a of deps.get(s.name) ?? []) {
      edges.push({ from: a, to: s.name });
    }
  }
  const columns = nodes.length ? Math.max(...nodes.map(n => n.column)) + 1 : 0;
  const maxRows = rows.size ? Math.max(...rows.values()) : 0;
  return {
    nodes,
    edges,
    width: columns ? 2 * PAD + columns * NODE_W + (columns - 1) * GAP_X : 0,
    height: maxRows ? 2 * PAD + maxRows * NODE_H + (maxRows - 1) * GAP_Y : 0
  };
}
