// `canary-gate pause NAME`: see actions.ts.

import { actionCommand } from './actions.js';

export const command = actionCommand('pause');
