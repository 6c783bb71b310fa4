/**
 * scipy.optimize.linear_sum_assignment, which DROP's official F1 (and lm-eval's copy of it) uses to
 * pair predicted and gold answer spans. This follows scipy's rectangular_lsap.cpp: Crouse's
 * shortest augmenting path with the same scan order and tie-breaking, so when several pairings are
 * optimal herd picks the one scipy picks (DROP's F1 can depend on which: it keeps one score per
 * max(row, column) slot).
 */

/** Row and column indices of a minimum-cost assignment of min(rows, columns) pairs, rows ascending. */
export function linearSumAssignment(cost: readonly (readonly number[])[]): { rows: number[]; columns: number[] } {
  const rowCount = cost.length;
  const columnCount = cost[0]?.length ?? 0;
  if (rowCount === 0 || columnCount === 0) return { rows: [], columns: [] };
  // scipy solves a tall matrix transposed.
  const transpose = columnCount < rowCount;
  const matrix = transpose ? Array.from({ length: columnCount }, (_, j) => cost.map((row) => row[j]!)) : cost;
  const columnOfRow = solveWide(matrix);
  if (!transpose) return { rows: columnOfRow.map((_, i) => i), columns: columnOfRow };
  // Transposed back: pairs ordered by the original row (argsort of the solved column indices).
  const order = columnOfRow.map((_, i) => i).sort((a, b) => columnOfRow[a]! - columnOfRow[b]!);
  return { rows: order.map((i) => columnOfRow[i]!), columns: order };
}

/** rectangular_lsap.cpp `solve` for rows ≤ columns: the column assigned to each row. */
function solveWide(cost: readonly (readonly number[])[]): number[] {
  const rows = cost.length;
  const columns = cost[0]!.length;
  const u = new Array<number>(rows).fill(0);
  const v = new Array<number>(columns).fill(0);
  const columnOfRow = new Array<number>(rows).fill(-1);
  const rowOfColumn = new Array<number>(columns).fill(-1);
  for (let current = 0; current < rows; current++) {
    const search = augmentingPath(cost, u, v, rowOfColumn, current);
    u[current]! += search.minVal;
    for (let i = 0; i < rows; i++) {
      if (search.scannedRows[i] && i !== current) u[i]! += search.minVal - search.shortest[columnOfRow[i]!]!;
    }
    for (let j = 0; j < columns; j++) {
      if (search.scannedColumns[j]) v[j]! -= search.minVal - search.shortest[j]!;
    }
    let j = search.sink;
    for (;;) {
      const i = search.path[j]!;
      rowOfColumn[j] = i;
      [columnOfRow[i], j] = [j, columnOfRow[i]!];
      if (i === current) break;
    }
  }
  return columnOfRow;
}

/** rectangular_lsap.cpp `augmenting_path`: Dijkstra over reduced costs from row `start` to a free column. */
function augmentingPath(cost: readonly (readonly number[])[], u: number[], v: number[], rowOfColumn: number[], start: number) {
  const columns = v.length;
  // Filled in reverse so that a constant cost matrix is solved by the identity (scipy #11602).
  const remaining = Array.from({ length: columns }, (_, it) => columns - it - 1);
  let remainingCount = columns;
  const scannedRows = new Array<boolean>(u.length).fill(false);
  const scannedColumns = new Array<boolean>(columns).fill(false);
  const shortest = new Array<number>(columns).fill(Number.POSITIVE_INFINITY);
  const path = new Array<number>(columns).fill(-1);
  let minVal = 0;
  let i = start;
  let sink = -1;
  while (sink === -1) {
    let index = -1;
    let lowest = Number.POSITIVE_INFINITY;
    scannedRows[i] = true;
    for (let it = 0; it < remainingCount; it++) {
      const j = remaining[it]!;
      const reduced = minVal + cost[i]![j]! - u[i]! - v[j]!;
      if (reduced < shortest[j]!) {
        path[j] = i;
        shortest[j] = reduced;
      }
      // Among equally short paths, prefer one that ends at a free column.
      if (shortest[j]! < lowest || (shortest[j] === lowest && rowOfColumn[j] === -1)) {
        lowest = shortest[j]!;
        index = it;
      }
    }
    minVal = lowest;
    if (!Number.isFinite(minVal)) throw new Error('cost matrix is infeasible');
    const j = remaining[index]!;
    if (rowOfColumn[j] === -1) sink = j;
    else i = rowOfColumn[j]!;
    scannedColumns[j] = true;
    remaining[index] = remaining[--remainingCount]!;
  }
  return { sink, minVal, shortest, path, scannedRows, scannedColumns };
}
