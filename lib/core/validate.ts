// Number rules shared by every option check: what a value must be, said the same way everywhere.

/** A numeric value's constraint: bounds (open or closed), integer-ness, whether null is allowed. */
export interface NumberRule {
  min?: number;
  max?: number;
  minOpen?: boolean;
  maxOpen?: boolean;
  integer?: boolean;
  nullable?: boolean;
}

/** What a rule accepts, in words: "an integer ≥ 1", "a finite number in [0, 1)", "… or null". */
export function describeRule(rule: NumberRule): string {
  const kind = rule.integer ? "an integer" : "a finite number";
  let range = "";
  if (rule.min !== undefined && rule.max !== undefined) range = ` in ${rule.minOpen ? "(" : "["}${rule.min}, ${rule.max}${rule.maxOpen ? ")" : "]"}`;
  else if (rule.min !== undefined) range = ` ${rule.minOpen ? ">" : "≥"} ${rule.min}`;
  return `${kind}${range}${rule.nullable ? " or null" : ""}`;
}

/** Whether `value` satisfies `rule`: a number (not a numeric string), finite, in range, integer where asked. */
export function fitsRule(value: unknown, rule: NumberRule): boolean {
  if (value === null) return rule.nullable === true;
  if (typeof value !== "number" || !Number.isFinite(value)) return false;
  if (rule.integer && !Number.isSafeInteger(value)) return false;
  if (rule.min !== undefined && (rule.minOpen ? !(value > rule.min) : !(value >= rule.min))) return false;
  if (rule.max !== undefined && (rule.maxOpen ? !(value < rule.max) : !(value <= rule.max))) return false;
  return true;
}

/** A value as error messages show it: numbers as JS writes them (NaN, Infinity), the rest as JSON. */
export function showValue(value: unknown): string {
  return typeof value === "number" ? String(value) : JSON.stringify(value) ?? String(value);
}
