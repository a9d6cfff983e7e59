/**
 * SMART_CONFIG_FILE and BACKEND_CONFIG_FILE: a JSON file of registrations, `{"registrations":[…]}` or a bare
 * array, read and checked against the entry's schema once at startup. Every problem is named with the variable,
 * the file and the entry's path, and added to the startup's list (nothing is thrown).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

export function readRegistrationsFile<T extends z.ZodType>(variable: string, file: string, entry: T, problems: string[]): z.infer<T>[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    problems.push(`${variable}: cannot read ${JSON.stringify(file)}: ${(err as Error).message}`);
    return [];
  }
  const parsed = z.object({ registrations: z.array(entry).min(1) }).safeParse(Array.isArray(raw) ? { registrations: raw } : raw);
  if (parsed.success) return parsed.data.registrations;
  for (const issue of parsed.error.issues) problems.push(`${variable} (${file}): ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  return [];
}
