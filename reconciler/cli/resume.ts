// `canary-gate resume NAME`: see actions.ts.

import { actionCommand } from './actions.js';

export const command = actionCommand('resume');
