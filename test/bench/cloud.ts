// Bench rows of the cloud layer: what `/status` asks of the cloud for a 500-instance fleet
// (list the fleet, ping every SSM agent), through the simulated cloud and through the AWS
// adapter's real SDK clients against a loopback stand-in for EC2 and SSM. The adapter row's
// floor is the bare SDK clients sending the same requests one after another.
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { createAwsCloud } from '../../jobs/cloud/aws.js';
import { ManualClock } from '../../jobs/cloud/clock.js';
import { createSimCloud } from '../../jobs/cloud/sim.js';
import type { Cloud } from '../../jobs/cloud/types.js';
import { ec2Reply, instanceXml, jsonReply, startStub } from '../jobs/cloud/stub.js';
import { median, ms, type Row } from './table.js';

const FLEET = 500;
const RUNS = 30;
const BUDGET_MS = 1000;
const EC2_BUDGET = Math.ceil(FLEET / 1000);
const SSM_BUDGET = Math.ceil(FLEET / 50);

async function statusOnce(cloud: Cloud): Promise<number> {
  const start = performance.now();
  const fleet = await cloud.listFleetInstances();
  const ping = await cloud.pingStatus(fleet.map((i) => i.instanceId));
  if (fleet.length !== FLEET || ping.size !== FLEET)
    throw new Error(`expected ${FLEET} instances, got ${fleet.length}`);
  return performance.now() - start;
}

export async function cloudFleetStatus(): Promise<Row[]> {
  return [await simRow(), await adapterRow()];
}

async function simRow(): Promise<Row> {
  const sim = createSimCloud({
    clock: new ManualClock(),
    amis: [{ name: 'clawdinator-nixos-1' }],
    fleet: Array.from({ length: FLEET }, (_, n) => ({ name: `clawdinator-${n + 1}` })),
  });
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push(await statusOnce(sim));
  const ec2 = sim.calls.ec2 / RUNS;
  const ssm = sim.calls.ssm / RUNS;
  const wall = median(times);
  return {
    what: `simulated cloud: list + ping ${FLEET} instances, median of ${RUNS}`,
    project: `${ms(wall)}; EC2 ${ec2} call, SSM ${ssm} calls`,
    floor: '—',
    ratio: null,
    budget: `≤ ${BUDGET_MS} ms; EC2 ≤ ${EC2_BUDGET}, SSM ≤ ${SSM_BUDGET}`,
    ok: wall <= BUDGET_MS && ec2 <= EC2_BUDGET && ssm <= SSM_BUDGET,
  };
}

async function adapterRow(): Promise<Row> {
  const ids = Array.from({ length: FLEET }, (_, n) => `i-${n.toString(16).padStart(17, '0')}`);
  const instances = `<reservationSet><item><instancesSet>${ids.map((id, n) => instanceXml(id, `clawdinator-${n + 1}`)).join('')}</instancesSet></item></reservationSet>`;
  const stub = await startStub((req) => {
    if (req.action === 'DescribeInstances') return ec2Reply('DescribeInstances', instances);
    const asked: string[] = JSON.parse(req.body).Filters[0].Values;
    return jsonReply({ InstanceInformationList: asked.map((id) => ({ InstanceId: id, PingStatus: 'Online' })) });
  });
  try {
    const config = {
      region: 'eu-central-1',
      endpoint: stub.url,
      credentials: { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench' },
      retryMode: 'adaptive',
    };
    const ec2 = new EC2Client(config);
    const ssm = new SSMClient(config);
    const cloud = createAwsCloud({ clients: { ec2, ssm } });
    const bare = async () => {
      const start = performance.now();
      await ec2.send(new DescribeInstancesCommand({ MaxResults: 1000 }));
      for (let i = 0; i < ids.length; i += 50) {
        await ssm.send(
          new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: ids.slice(i, i + 50) }] }),
        );
      }
      return performance.now() - start;
    };
    // Warm up: the first calls load the SDKs and open connections.
    for (let i = 0; i < 3; i++) {
      await statusOnce(cloud);
      await bare();
    }
    stub.requests.length = 0;
    const project: number[] = [];
    const floor: number[] = [];
    const ratios: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      project.push(await statusOnce(cloud));
      floor.push(await bare());
      ratios.push((project.at(-1) as number) / (floor.at(-1) as number));
    }
    const ec2Calls = stub.requests.filter((r) => r.action === 'DescribeInstances').length / (2 * RUNS);
    const ssmCalls = stub.requests.filter((r) => r.action === 'DescribeInstanceInformation').length / (2 * RUNS);
    const wall = median(project);
    return {
      what: `AWS adapter (SDK over loopback): list + ping ${FLEET} instances, median of ${RUNS} (ratio: median of pairs)`,
      project: `${ms(wall)}; EC2 ${ec2Calls} call, SSM ${ssmCalls} calls`,
      floor: `bare SDK sends, one after another ${ms(median(floor))}`,
      ratio: median(ratios),
      budget: `≤ ${BUDGET_MS} ms; EC2 ≤ ${EC2_BUDGET}, SSM ≤ ${SSM_BUDGET}`,
      ok: wall <= BUDGET_MS && ec2Calls <= EC2_BUDGET && ssmCalls <= SSM_BUDGET,
    };
  } finally {
    await stub.close();
  }
}
