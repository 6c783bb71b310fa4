import fs from 'node:fs';
import { HerdError } from '../errors.js';

/** Bytes an unprivileged process may still write on the file system that holds `dir`. */
export function freeBytesAt(dir: string): number {
  const stats = fs.statfsSync(dir);
  return stats.bavail * stats.bsize;
}

/** Refuses, before the first byte, a download the disk cannot hold, with both numbers. */
export function checkFreeSpace(dir: string, neededBytes: number, freeBytes: (dir: string) => number = freeBytesAt): void {
  const free = freeBytes(dir);
  if (neededBytes > free) {
    throw new HerdError(`not enough disk space in ${dir}: the download needs ${readableBytes(neededBytes)} (${neededBytes} bytes) and ${readableBytes(free)} (${free} bytes) is free`, { kind: 'io', file: dir });
  }
}

/** 1536 → "1.5 KiB": binary units, as disk tools print them. */
export function readableBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}
