// `canary-gate retry NAME`: see actions.ts.

import { actionCommand } from './actions.js';

export const command = actionCommand('retry');
