#!/usr/bin/env node
import v8 from 'node:v8';
import { execute } from '@oclif/core';

// V8 doubles its young generation (up to two 16 MB semi-spaces) while a model's tokenizer is
// built, and keeps it for the rest of the run: about 30 MB of RSS beside the weights. Kept at its
// first size, collections come more often: a model load took about 0.2 s more CPU time on the
// 1B shape, prefill and decode no more (docs/performance.md, "Peak RSS of a native load").
v8.setFlagsFromString('--semi-space-growth-factor=1');
await execute({ dir: import.meta.url });
