/** The value on one line of Prometheus' text exposition (`name{labels} value`), or undefined when there is no such line. */
export function metricValue(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}
