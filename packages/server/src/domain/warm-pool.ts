export interface WarmPoolRecord {
  id: string;
  template: string;
  size: number;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
}
